//! The terminal: what `ferry`'s verbs show and do beyond one request.
//!
//! - `live` (Unix): `ferry status`'s live view; `wait` (Unix): `ferry wait`.
//! - [`doctor`]: `ferry doctor`'s checks; [`resolve`]: `ferry resolve`.

pub mod doctor;
#[cfg(unix)]
pub mod live;
pub mod resolve;
#[cfg(unix)]
pub mod wait;
