//! The desktop: notifications ([`notify`]) and the tray ([`tray`]).

pub mod notify;
pub mod tray;
