//! [`Op`]: what one route of the table says about itself in the OpenAPI document — its
//! summary, query parameters, request body and answers — each schema taken from a Rust type
//! (`utoipa::ToSchema`, `utoipa::IntoParams`), so that the document follows the types the
//! handler really parses and returns.
//!
//! Path parameters, security and the answers every route shares (access, edge limits) are
//! not said here: [`super::document`] derives them from the route table.

use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// One answer of an operation.
pub(crate) struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Why it comes.
    pub description: String,
    /// Media type and schema of the body; `None` for an empty body (204).
    pub content: Option<(&'static str, RefOr<Schema>)>,
    /// Headers it carries: name, description, schema.
    pub headers: Vec<(&'static str, &'static str, RefOr<Schema>)>,
}

/// What a route documents about itself.
pub struct Op {
    pub(crate) summary: &'static str,
    pub(crate) description: Option<String>,
    pub(crate) query: Vec<Parameter>,
    pub(crate) body: Option<RefOr<Schema>>,
    pub(crate) answers: Vec<Answer>,
    /// The named schemas its types reference (collected into `components`).
    pub(crate) schemas: Vec<(String, RefOr<Schema>)>,
}

impl Op {
    /// An operation with a one-line summary and nothing else yet.
    pub fn new(summary: &'static str) -> Self {
        Op {
            summary,
            description: None,
            query: Vec::new(),
            body: None,
            answers: Vec::new(),
            schemas: Vec::new(),
        }
    }

    /// The longer description.
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// The query parameters: the fields of the struct the handler deserializes them into.
    pub fn query<P: IntoParams>(mut self) -> Self {
        self.query = P::into_params(|| Some(ParameterIn::Query));
        self
    }

    /// Describes the query parameter `name` as a JSON document of the named schema
    /// (`content: application/json`) instead of a bare string.
    pub fn json_query(mut self, name: &str, why: &str, schema: &str) -> Self {
        use utoipa::openapi::path::ParameterBuilder;
        let content =
            utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(schema)));
        let param = ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .description(Some(why))
            .content("application/json", content)
            .build();
        self.query.retain(|p| p.name != name);
        self.query.push(param);
        self
    }

    /// A JSON request body of type `T`.
    pub fn body<T: ToSchema>(mut self) -> Self {
        let schema = self.reference::<T>();
        self.body = Some(schema);
        self
    }

    /// A JSON answer of type `T` with this status.
    pub fn answer<T: ToSchema>(mut self, status: u16, why: &str) -> Self {
        let schema = self.reference::<T>();
        self.answers.push(Answer {
            status,
            description: why.to_string(),
            content: Some(("application/json", schema)),
            headers: Vec::new(),
        });
        self
    }

    /// An answer of another media type whose body (or each line, for NDJSON) is a `T`.
    pub fn answer_as<T: PartialSchema>(
        mut self,
        status: u16,
        why: &str,
        media_type: &'static str,
        headers: Vec<(&'static str, &'static str, RefOr<Schema>)>,
    ) -> Self {
        self.answers.push(Answer {
            status,
            description: why.to_string(),
            content: Some((media_type, T::schema())),
            headers,
        });
        self
    }

    /// An answer without a body (204).
    pub fn empty(mut self, status: u16, why: &str) -> Self {
        self.answers.push(Answer {
            status,
            description: why.to_string(),
            content: None,
            headers: Vec::new(),
        });
        self
    }

    /// An error answer particular to this route (e.g. 404), in the error shape.
    pub fn error(mut self, status: u16, why: &str) -> Self {
        let schema = self.reference::<crate::error::ErrorBody>();
        self.answers.push(Answer {
            status,
            description: why.to_string(),
            content: Some(("application/json", schema)),
            headers: Vec::new(),
        });
        self
    }

    /// A reference to `T`'s named schema, collecting it and what it references.
    fn reference<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let name = T::name().to_string();
        self.schemas.push((name.clone(), T::schema()));
        T::schemas(&mut self.schemas);
        RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
    }
}
