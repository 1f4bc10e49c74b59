//! OAuth protocol logic, independent of axum: errors, request parsing, client
//! authentication, audience and scope decisions, grants and token signing.

pub mod access_token;
pub mod act;
pub mod authorize;
pub mod cimd;
pub mod client_auth;
pub mod clients;
pub mod error;
pub mod form;
pub mod grants;
pub mod introspect;
pub mod lineage;
pub mod login;
pub mod register;
pub mod scope;
pub mod token;
pub mod types;
