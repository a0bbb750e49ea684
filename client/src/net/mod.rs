//! The network: the server's HTTP API as a client ([`remote`]), the token
//! bucket its transfers keep to ([`bucket`]), and bandwidth limits as
//! people give them, with their schedule ([`schedule`]). Below the sync
//! core and the daemon; it depends on neither.

pub mod bucket;
pub mod remote;
pub mod schedule;
