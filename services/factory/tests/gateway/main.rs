//! The HTTP edge end to end: real HTTP against the real stack on a real nats-server.

mod auth;
mod endpoints;
mod errors;
mod openapi;
mod personal;
mod props;
mod support;
