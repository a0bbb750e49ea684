//! `ferry limit`: bandwidth limits, kept in the config and applied by a
//! running daemon at once.

use anyhow::bail;

use crate::config::Dirs;
use crate::net::schedule::{Days, Rate, Schedule, Window, show_rate};

/// What `ferry limit` was asked to change.
pub struct Change {
    pub up: Option<Rate>,
    pub down: Option<Rate>,
    pub between: Option<Window>,
    pub days: Option<Days>,
    pub no_schedule: bool,
}

pub async fn limit(dirs: &Dirs, change: Change) -> anyhow::Result<()> {
    let Change { up, down, between, days, no_schedule } = change;
    let (mut config, token) = dirs.load()?;
    if let Some(between) = between {
        if up.is_none() && down.is_none() {
            bail!("give the limits for {between}: --up RATE and/or --down RATE (`off` for none)");
        }
        let days = days.unwrap_or(Days::ALL);
        // The same window again changes only the rates given.
        let same = config.limit_schedule.filter(|s| s.between == between && s.days == days);
        config.limit_schedule = Some(Schedule {
            up: up.map_or(same.and_then(|s| s.up), |r| r.0),
            down: down.map_or(same.and_then(|s| s.down), |r| r.0),
            between,
            days,
        });
    } else {
        if let Some(u) = up {
            config.limit_up = u.0;
        }
        if let Some(d) = down {
            config.limit_down = d.0;
        }
    }
    if no_schedule {
        config.limit_schedule = None;
    }
    if up.is_some() || down.is_some() || no_schedule {
        dirs.save(&config, &token)?;
        #[cfg(unix)]
        let req = crate::daemon::control::Request::Limits(config.limits());
        #[cfg(unix)]
        if crate::daemon::control::command(&dirs.control_socket(), &req).await.is_err() {
            println!("(the daemon is not running: the limits apply when it starts)");
        }
    }
    let l = config.limits();
    println!("uploads: {}, downloads: {}", show_rate(l.up), show_rate(l.down));
    if let Some(s) = l.schedule {
        let now = if l.at(&jiff::Zoned::now()).2 { " (now)" } else { "" };
        println!("{s}{now}");
    }
    Ok(())
}
