//! The server role: Raft (openraft) over the state store, the server RPC port, leader
//! forwarding.

pub mod command;
pub mod raft;
