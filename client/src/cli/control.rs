//! The verbs that talk to the running daemon over its control socket:
//! `ferry status`, `wait`, `pause` and `resume`.

use crate::config::Dirs;
use crate::daemon::control::{Request, command};

pub async fn status(dirs: &Dirs, json: bool, once: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !json && !once && std::io::stdout().is_terminal() {
        return super::live::live(&dirs.control_socket()).await;
    }
    let status = crate::daemon::control::status(&dirs.control_socket()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        for l in super::live::lines(&status) {
            println!("{l}");
        }
    }
    Ok(())
}

pub async fn wait(dirs: &Dirs, timeout: Option<u64>) -> anyhow::Result<()> {
    super::wait::wait(&dirs.control_socket(), timeout.map(std::time::Duration::from_secs)).await
}

pub async fn pause(dirs: &Dirs, for_secs: Option<u64>) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let until = for_secs.map(|s| now + (s as i64) * 1000);
    command(&dirs.control_socket(), &Request::Pause { until }).await?;
    match until {
        Some(u) => println!("paused until {} UTC; `ferry resume` resumes now", ferry_shared::time::utc_string(u)),
        None => println!("paused (also after a restart) until `ferry resume`"),
    }
    Ok(())
}

pub async fn resume(dirs: &Dirs, confirm_deletes: bool) -> anyhow::Result<()> {
    command(&dirs.control_socket(), &Request::Resume { confirm_deletes }).await?;
    println!("resumed");
    Ok(())
}
