//! The grants of the token endpoint. Each takes the authenticated client,
//! its typed request and the audit context, and returns an
//! [`Issue`](crate::oauth::token::Issue) or a
//! [`Refusal`](crate::oauth::token::Refusal).

pub mod client_credentials;
