//! Who may call a route: the scope each entry of the route table carries and each API key
//! is granted.

/// Who may call a route (API.md "Access").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Anyone: health, readiness, metrics, the API description.
    Public,
    /// Recommend, similar, GET items and users.
    Read,
    /// PUT items, events.
    Write,
    /// Deletes, `/v1/admin/*`.
    Admin,
}

impl Scope {
    /// The scope's name (as `recd keys create --scopes` and the OpenAPI `x-recd-scope` say it).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}
