//! The HTTP contract as the e2e suite holds it: every answer a test gets through the
//! [`Server`](crate::server::Server) helpers is checked against the OpenAPI document the
//! same server serves at `/openapi.json` (fetched once per server). An answer whose status
//! the document does not list for its operation, or whose body does not match the schema
//! listed for that status, fails the test with the operation, the status, the body and
//! what did not match. A path no operation has must answer 404, a method the path lacks
//! 405, both in the error shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// The document of one server and the validators built from it so far.
pub struct Contract {
    doc: Value,
    /// (path template, method, status) → validator of the JSON body.
    validators: Mutex<HashMap<(String, String, u16), Arc<jsonschema::Validator>>>,
}

/// What a response was, for the check.
pub struct Answer<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

impl Contract {
    pub fn new(doc: Value) -> Contract {
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
            "/openapi.json is not an OpenAPI 3 document: {doc}"
        );
        Contract {
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The template of the documented path `path` matches, the one with the most literal
    /// segments when several do.
    fn template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"].as_object()?;
        paths
            .keys()
            .filter_map(|t| {
                let ts: Vec<&str> = t.split('/').collect();
                if ts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (t, s) in ts.iter().zip(&segments) {
                    if t.starts_with('{') && t.ends_with('}') {
                        if s.is_empty() {
                            return None;
                        }
                    } else if t == s {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, t.clone()))
            })
            .max()
            .map(|(_, t)| t)
    }

    /// Panics, naming the problem, if `answer` is not what the document allows.
    pub fn check(&self, answer: &Answer<'_>) {
        let what = format!("{} {} → {}", answer.method, answer.path, answer.status);
        let text = String::from_utf8_lossy(answer.body);
        let Some(template) = self.template(answer.path) else {
            assert_eq!(
                answer.status, 404,
                "{what}: a path the document lacks must be a 404: {text}"
            );
            self.validate_error(&what, answer);
            return;
        };
        let method = answer.method.to_lowercase();
        let op = &self.doc["paths"][&template][&method];
        if op.is_null() {
            assert_eq!(
                answer.status, 405,
                "{what}: a method the document lacks for {template} must be a 405: {text}"
            );
            self.validate_error(&what, answer);
            return;
        }
        let what = format!("{} {template} → {}", answer.method, answer.status);
        let response = &op["responses"][answer.status.to_string()];
        assert!(
            response.is_object(),
            "{what}: status {} is not documented for this operation (documented: {:?}); body: {text}",
            answer.status,
            op["responses"]
                .as_object()
                .map(|r| r.keys().collect::<Vec<_>>())
        );
        let Some(content) = response["content"].as_object() else {
            assert!(
                answer.body.is_empty(),
                "{what}: the document gives this answer no body, got: {text}"
            );
            return;
        };
        let media = answer
            .content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let Some(media_doc) = content.get(&media) else {
            panic!(
                "{what}: content type {media:?} is not documented (documented: {:?}); body: {text}",
                content.keys().collect::<Vec<_>>()
            );
        };
        let Some(schema) = media_doc.get("schema") else {
            return;
        };
        let instances: Vec<Value> = match media.as_str() {
            "application/json" => vec![
                serde_json::from_slice(answer.body)
                    .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {text}")),
            ],
            "application/x-ndjson" => text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{what}: an NDJSON line is not JSON ({e}): {l}"))
                })
                .collect(),
            _ => return,
        };
        let validator = self.validator(&template, &method, answer.status, schema);
        for instance in &instances {
            let errors: Vec<String> = validator
                .iter_errors(instance)
                .map(|e| format!("at '{}': {e}", e.instance_path()))
                .take(5)
                .collect();
            assert!(
                errors.is_empty(),
                "{what}: the answer does not match /openapi.json:\n  {}\nbody: {instance}",
                errors.join("\n  ")
            );
        }
    }

    /// The body is the API's error shape.
    fn validate_error(&self, what: &str, answer: &Answer<'_>) {
        let body: Value = serde_json::from_slice(answer.body).unwrap_or_else(|e| {
            panic!(
                "{what}: an error answer must be JSON ({e}): {}",
                String::from_utf8_lossy(answer.body)
            )
        });
        let schema = json!({"$ref": "#/components/schemas/Error"});
        let validator = self.validator("", "error", answer.status, &schema);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: not the error shape: {errors:?}: {body}"
        );
    }

    fn validator(
        &self,
        template: &str,
        method: &str,
        status: u16,
        schema: &Value,
    ) -> Arc<jsonschema::Validator> {
        let key = (template.to_string(), method.to_string(), status);
        let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(cache.entry(key).or_insert_with(|| {
            // The schema with the document's components beside it, so that its
            // `#/components/schemas/...` references resolve (OpenAPI 3.1 schemas are JSON
            // Schema 2020-12).
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.doc["components"],
                "allOf": [schema],
            });
            Arc::new(
                jsonschema::draft202012::new(&root)
                    .unwrap_or_else(|e| panic!("/openapi.json has a bad schema ({e}): {schema}")),
            )
        }))
    }
}
