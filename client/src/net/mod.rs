//! The network: the server's HTTP API as a client ([`remote`]) and the
//! bandwidth limits its transfers keep to ([`limit`]).

pub mod limit;
pub mod remote;
