//! The OpenAPI 3 document, generated from the route table the router is
//! built from, so it lists exactly what is served. JSON only: no UI assets.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use domain::search::{Audience, SearchLimits};

use crate::table::{Operation, media};

/// The rendered document, shared with the `/openapi.json` handler.
#[derive(Clone)]
pub struct OpenApiDocument(pub Arc<str>);

/// `GET /openapi.json`.
pub async fn serve(Extension(document): Extension<OpenApiDocument>) -> Response {
    let mut response = (StatusCode::OK, document.0.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Builds the document for `operations`, served at `public_url`, with the
/// page-size bounds the server enforces.
pub fn document(operations: &[Operation], public_url: &str, limits: SearchLimits) -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for op in operations {
        paths.entry(op.path.as_str()).or_default().insert(
            op.method.as_str().to_ascii_lowercase(),
            operation(op, limits),
        );
    }
    let token_url = format!("{public_url}{}", crate::routes::TOKEN_PATH);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "nrls: National Record Locator Service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "NRL v3 compatible producer and consumer FHIR R4 APIs, the patient API (NHS login), OAuth 2.0 token endpoint and operational endpoints. Generated from the server's route table.",
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "oauth2",
                    "description": "client credentials with a signed JWT client assertion (RFC 7523, RS384 or ES384)",
                    "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": {}}},
                },
                "patientBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a patient token from POST /patient/token (NHS login, P9); opens /patient/FHIR/R4 only",
                },
                "patientSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "nrls-session",
                    "description": "the /my-record/ session of a patient signed in with NHS login (__Host-nrls-session over https)",
                },
            },
            "schemas": {
                "DocumentReference": fhir_schema("DocumentReference", "An NRL v3 pointer"),
                "Bundle": fhir_schema("Bundle", "A searchset of DocumentReferences, with a next link when there are more"),
                "OperationOutcome": fhir_schema("OperationOutcome", "What was wrong, one issue per problem"),
            },
        },
    })
}

fn fhir_schema(resource_type: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [resource_type]}},
        "additionalProperties": true,
    })
}

fn operation(op: &Operation, limits: SearchLimits) -> Value {
    let doc = &op.doc;
    let mut parameters: Vec<Value> = path_parameters(&op.path)
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    // A POST `_search` takes its parameters in the body, not the query.
    if !is_search_post(op) {
        parameters.extend(doc.query.iter().map(|name| {
            // The patient API's own parameters: the patient is the caller,
            // so naming them is optional, and its pages are smaller.
            let schema = match (doc.patient, *name) {
                (true, "_count") => json!({"type": "integer", "minimum": 1, "maximum": 100}),
                (true, "_cursor") => {
                    json!({"type": "string", "description": "From the next link of the previous page"})
                }
                (true, "date") => {
                    json!({"type": "string", "pattern": "^(ge|gt|le|lt|eq)?[0-9]{4}-[0-9]{2}-[0-9]{2}$"})
                }
                (true, "_include-own") => json!({"type": "boolean"}),
                _ => parameter_schema(name, limits, false),
            };
            json!({
                "name": name,
                "in": "query",
                // Both app audiences must name the patient (domain::search::parse).
                "required": *name == "subject:identifier" && !doc.patient,
                "schema": schema,
            })
        }));
    }
    if doc.authenticated {
        parameters.push(header_parameter(
            "NHSD-End-User-Organisation-ODS",
            "The ODS code of the organisation the app acts for",
        ));
        parameters.push(header_parameter(
            "X-Request-Id",
            "A UUID identifying this request",
        ));
    }
    let mut value = json!({
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": [doc.tag],
        "responses": responses(op),
    });
    if !parameters.is_empty() {
        value["parameters"] = Value::Array(parameters);
    }
    if !doc.body.is_empty() {
        let content: Map<String, Value> = doc
            .body
            .iter()
            .map(|media_type| {
                (
                    (*media_type).to_owned(),
                    json!({"schema": body_schema(op, media_type, limits)}),
                )
            })
            .collect();
        value["requestBody"] = json!({"required": true, "content": content});
    }
    if doc.authenticated {
        value["security"] = json!([{"bearer": []}]);
    }
    if doc.patient {
        value["security"] = if op.path.ends_with("/patient/token") {
            json!([{"patientSession": []}])
        } else {
            json!([{"patientBearer": []}, {"patientSession": []}])
        };
    }
    value
}

fn header_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "header", "required": true, "description": description, "schema": {"type": "string"}})
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn is_search_post(op: &Operation) -> bool {
    op.doc.operation_id.ends_with("SearchPost")
}

/// What each search parameter accepts, as `domain::search::parse` checks it.
/// In a `_search` body every value is a string, so `_count` is a pattern there.
fn parameter_schema(name: &str, limits: SearchLimits, in_body: bool) -> Value {
    match name {
        "subject:identifier" => json!({
            "type": "string",
            "pattern": "^https://fhir\\.nhs\\.uk/Id/nhs-number\\|[0-9]{10}$",
            "example": "https://fhir.nhs.uk/Id/nhs-number|9999999999",
            "description": "The patient's NHS number (10 digits, Mod 11 checked) with its system",
        }),
        "custodian:identifier" => json!({
            "type": "string",
            "description": "ODS codes, comma-separated, each optionally as https://fhir.nhs.uk/Id/ods-organization-code|<code>",
        }),
        "type" | "category" => json!({
            "type": "string",
            "description": "system|code pairs from the pointer-type catalogue, comma-separated (OR)",
        }),
        "_count" if !in_body => json!({
            "type": "integer",
            "minimum": 1,
            "maximum": limits.max_count,
            "default": limits.default_count,
        }),
        "_count" => json!({
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": format!("A whole number from 1 to {} (default {})", limits.max_count, limits.default_count),
        }),
        "_summary" => json!({"type": "string", "enum": ["count"]}),
        "_format" => json!({
            "type": "string",
            "enum": ["json", "application/json", "application/fhir+json", "application/json+fhir"],
        }),
        "_pretty" => json!({"type": "string", "enum": ["true", "false"]}),
        "_cursor" => {
            json!({"type": "string", "description": "The opaque cursor of a next link; bound to its query"})
        }
        _ => json!({"type": "string"}),
    }
}

fn body_schema(op: &Operation, media_type: &str, limits: SearchLimits) -> Value {
    if is_search_post(op) {
        // The search parameters, as a JSON object of strings or as a form:
        // either way every value is a string.
        let audience = if op.doc.tag == "producer" {
            Audience::Producer
        } else {
            Audience::Consumer
        };
        let properties: Map<String, Value> = audience
            .parameters()
            .iter()
            .map(|name| ((*name).to_owned(), parameter_schema(name, limits, true)))
            .collect();
        return json!({
            "type": "object",
            "required": ["subject:identifier"],
            "properties": properties,
            "additionalProperties": false,
        });
    }
    match (media_type, op.doc.tag) {
        (media::FHIR_JSON | media::JSON, "producer") => {
            json!({"$ref": "#/components/schemas/DocumentReference"})
        }
        _ => json!({"type": "object"}),
    }
}

fn responses(op: &Operation) -> Value {
    let doc = &op.doc;
    let success_schema = match (doc.produces, doc.operation_id) {
        (media::FHIR_JSON, id) if id.ends_with("Search") || id.ends_with("SearchPost") => {
            json!({"$ref": "#/components/schemas/Bundle"})
        }
        (media::FHIR_JSON, id) if id.ends_with("Read") => {
            json!({"$ref": "#/components/schemas/DocumentReference"})
        }
        (media::FHIR_JSON, _) => json!({"type": "object"}),
        (media::PROMETHEUS, _) => json!({"type": "string"}),
        _ => json!({"type": "object"}),
    };
    let mut responses = Map::new();
    responses.insert(
        doc.success.to_string(),
        json!({"description": "Success", "content": {doc.produces: {"schema": success_schema}}}),
    );
    if doc.produces == media::FHIR_JSON {
        responses.insert(
            "default".into(),
            json!({
                "description": "An OperationOutcome naming every problem, with the HTTP status it maps to",
                "content": {media::FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}},
            }),
        );
    } else {
        responses.insert(
            "default".into(),
            json!({"description": "An error (OAuth endpoints answer RFC 6749 error objects)"}),
        );
    }
    Value::Object(responses)
}
