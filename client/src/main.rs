//! `ferry`: the sync client (daemon and CLI). Built in the client issue; until
//! then this binary only says so.

fn main() {
    eprintln!(
        "ferry {}: the sync client is not built yet; run the server with `ferry-server serve` (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
