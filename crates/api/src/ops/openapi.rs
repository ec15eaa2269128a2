//! The OpenAPI 3 document, generated from the route table the router is
//! built from, so it lists exactly what is served. JSON only: no UI assets.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

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

/// Builds the document for `operations`, served at `public_url`.
pub fn document(operations: &[Operation], public_url: &str) -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for op in operations {
        paths
            .entry(op.path.as_str())
            .or_default()
            .insert(op.method.as_str().to_ascii_lowercase(), operation(op));
    }
    let token_url = format!("{public_url}{}", crate::routes::TOKEN_PATH);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "nrls: National Record Locator Service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "NRL v3 compatible producer and consumer FHIR R4 APIs, OAuth 2.0 token endpoint and operational endpoints. Generated from the server's route table.",
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "oauth2",
                    "description": "client credentials with a signed JWT client assertion (RFC 7523, RS384 or ES384)",
                    "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": {}}},
                }
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

fn operation(op: &Operation) -> Value {
    let doc = &op.doc;
    let mut parameters: Vec<Value> = path_parameters(&op.path)
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(doc.query.iter().map(|name| {
        json!({
            "name": name,
            "in": "query",
            // Both audiences must name the patient (domain::search::parse).
            "required": *name == "subject:identifier",
            "schema": {"type": "string"},
        })
    }));
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
                    json!({"schema": body_schema(media_type)}),
                )
            })
            .collect();
        value["requestBody"] = json!({"required": true, "content": content});
    }
    if doc.authenticated {
        value["security"] = json!([{"bearer": []}]);
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

fn body_schema(media_type: &str) -> Value {
    match media_type {
        media::FORM => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        _ => json!({"$ref": "#/components/schemas/DocumentReference"}),
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
