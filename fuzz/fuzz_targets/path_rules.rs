//! Any string through the path rules: no panic, and whatever is accepted is
//! canonical (parsing it again gives it back) and cannot name anything
//! outside the namespace.
#![no_main]

use ferry_shared::RelPath;
use ferry_shared::path::name_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(p) = RelPath::parse(s) else { return };
    assert_eq!(RelPath::parse(p.as_str()).as_ref(), Ok(&p), "not canonical: {s:?}");
    assert!(!p.as_str().starts_with('/') && !p.as_str().ends_with('/'));
    for seg in p.segments() {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{s:?}");
        assert!(!seg.contains(['/', '\0']) && !seg.chars().any(char::is_control), "{s:?}");
        let _ = name_key(seg);
    }
    if let Some(parent) = p.parent() {
        assert!(p.starts_with(&parent));
        let _ = p.rebase(&parent, &RelPath::root());
    }
    let _ = p.join("x");
});
