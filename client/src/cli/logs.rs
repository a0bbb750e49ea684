//! `ferry logs`: the end of the daemon's log, and what it logs next.

use anyhow::Context;

use crate::config::Dirs;
use crate::daemon::logs::{follow, log_file, tail};

pub async fn logs(dirs: &Dirs, lines: usize, keep_following: bool) -> anyhow::Result<()> {
    let path = log_file(&dirs.state);
    let tail = tail(&path, lines)
        .with_context(|| format!("no log at {}: the daemon writes it once it runs (`ferry daemon`)", path.display()))?;
    for l in tail {
        println!("{l}");
    }
    if keep_following {
        tokio::task::spawn_blocking(move || follow(&path, std::io::stdout())).await??;
    }
    Ok(())
}
