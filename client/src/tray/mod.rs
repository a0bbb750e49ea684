//! `ferry tray`: the tray icon and its menu, in a process of its own beside
//! the daemon (so it never holds up syncing), talking to the daemon over
//! the control socket: it watches the status (`Request::Watch`, one line
//! per change) and sends pause and resume. On Linux it is a
//! StatusNotifierItem over D-Bus (tray-icon's ksni backend: no GTK, only a
//! session bus); one that cannot start says so once and exits.
//!
//! [`model`] is the menu as data, a pure function of the status.

pub mod model;

#[cfg(all(feature = "tray", target_os = "linux"))]
mod linux;

#[cfg(all(feature = "tray", target_os = "linux"))]
pub use linux::run;

/// Without a tray backend in this build.
#[cfg(not(all(feature = "tray", target_os = "linux")))]
pub fn run(_dirs: crate::config::Dirs) -> anyhow::Result<()> {
    anyhow::bail!("this ferry has no tray: it is built on Linux with the `tray` feature (the default)")
}

/// This machine's offset from UTC in seconds (from `date +%z`; 0 if unknown).
pub fn local_offset() -> i64 {
    let out = std::process::Command::new("date").arg("+%z").output().ok();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    let (sign, digits) = match text.split_at_checked(1) {
        Some(("-", d)) => (-1, d),
        Some(("+", d)) => (1, d),
        _ => return 0,
    };
    let (h, m) =
        (digits.get(..2).and_then(|h| h.parse::<i64>().ok()), digits.get(2..4).and_then(|m| m.parse::<i64>().ok()));
    match (h, m) {
        (Some(h), Some(m)) => sign * (h * 3600 + m * 60),
        _ => 0,
    }
}

/// A round icon of `size` pixels (RGBA) in the state's colour, with a
/// darker rim so it reads on light and dark panels alike.
pub fn draw_icon(kind: model::IconKind, size: u32) -> Vec<u8> {
    let (r, g, b) = match kind {
        model::IconKind::Idle => (0x2e, 0x9d, 0x4f),
        model::IconKind::Syncing => (0x2f, 0x6f, 0xdb),
        model::IconKind::Paused => (0x8a, 0x8f, 0x98),
        model::IconKind::Offline => (0xd0, 0x8a, 0x10),
        model::IconKind::Error => (0xd0, 0x34, 0x2c),
    };
    let c = (size as f64 - 1.0) / 2.0;
    let radius = size as f64 / 2.0 - 0.5;
    let mut out = Vec::with_capacity((size * size * 4) as usize);
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f64 - c).powi(2) + (y as f64 - c).powi(2)).sqrt();
            let px = if d > radius {
                [0, 0, 0, 0]
            } else if d > radius - 1.5 {
                [r / 2, g / 2, b / 2, 255]
            } else if kind == model::IconKind::Paused
                && (x as f64 - c).abs() > 1.0
                && (x as f64 - c).abs() < 3.5
                && (y as f64 - c).abs() < 4.0
            {
                [255, 255, 255, 255] // two bars
            } else {
                [r, g, b, 255]
            };
            out.extend_from_slice(&px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icons_are_round_and_differ_by_state() {
        let idle = draw_icon(model::IconKind::Idle, 22);
        assert_eq!(idle.len(), 22 * 22 * 4);
        assert_eq!(&idle[..4], &[0, 0, 0, 0], "a transparent corner");
        let centre = (11 * 22 + 11) * 4;
        assert_eq!(idle[centre + 3], 255);
        assert_ne!(draw_icon(model::IconKind::Error, 22), idle);
        assert_ne!(draw_icon(model::IconKind::Paused, 16), draw_icon(model::IconKind::Offline, 16));
    }
}
