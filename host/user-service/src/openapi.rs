//! The OpenAPI 3.1 document served at `/openapi.json`.

use axum::Json;
use serde_json::{Value, json};

fn problem() -> Value {
    json!({ "description": "A problem (RFC 9457)", "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

/// `GET /openapi.json`
pub async fn document() -> Json<Value> {
    let string = json!({ "type": "string" });
    let password = json!({ "type": "string", "description": "Any Unicode; 8 to 64 code points after NFKC by default" });
    Json(json!({
        "openapi": "3.1.0",
        "info": { "title": "User Service", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/v1/users": { "post": {
                "summary": "Register",
                "requestBody": body(json!({ "type": "object", "required": ["email", "password"], "properties": { "email": string, "password": password, "display_name": string, "captcha_token": string, "tenant": { "type": "string", "description": "Tenant whose allowed email domains apply (default `default`)" } } })),
                "responses": { "201": { "description": "Registered" }, "400": problem(), "403": problem(), "409": problem(), "422": problem() }
            }},
            "/v1/sessions": { "post": {
                "summary": "Log in",
                "requestBody": body(json!({ "type": "object", "required": ["email", "password"], "properties": { "email": string, "password": password, "captcha_token": string } })),
                "responses": { "200": { "description": "Logged in; `reset_required` when the password is now known to be breached" }, "401": problem(), "403": problem(), "429": problem() }
            }},
            "/v1/password/change": { "post": {
                "summary": "Change password",
                "requestBody": body(json!({ "type": "object", "required": ["email", "current_password", "new_password"], "properties": { "email": string, "current_password": password, "new_password": password } })),
                "responses": { "204": { "description": "Changed" }, "401": problem(), "422": problem() }
            }},
            "/v1/password/reset-requests": { "post": {
                "summary": "Request a reset (always 202: no user enumeration)",
                "requestBody": body(json!({ "type": "object", "required": ["email"], "properties": { "email": string, "captcha_token": string } })),
                "responses": { "202": { "description": "Accepted" }, "400": problem() }
            }},
            "/v1/password/resets": { "post": {
                "summary": "Complete a reset",
                "requestBody": body(json!({ "type": "object", "required": ["token", "new_password"], "properties": { "token": string, "new_password": password } })),
                "responses": { "204": { "description": "Reset" }, "400": problem(), "422": problem() }
            }},
            "/v1/password/check": { "post": {
                "summary": "Dry-run the password policy and breach check",
                "requestBody": body(json!({ "type": "object", "required": ["password"], "properties": { "password": password, "email": string, "display_name": string, "has_mfa": { "type": "boolean" } } })),
                "responses": { "200": { "description": "Verdict, findings, length, breach outcome" }, "400": problem() }
            }},
            "/admin/plugins": { "get": { "summary": "List plugins", "security": [{ "bearer": [] }], "responses": { "200": { "description": "Plugins" }, "401": problem() } } },
            "/admin/plugins/{name}/reload": { "post": { "summary": "Reload a plugin from its file", "security": [{ "bearer": [] }], "parameters": [{ "name": "name", "in": "path", "required": true, "schema": string }], "responses": { "200": { "description": "Swapped or unchanged" }, "404": problem(), "422": problem() } } },
            "/admin/plugins/{name}/rollback": { "post": { "summary": "Roll back to the previous version", "security": [{ "bearer": [] }], "parameters": [{ "name": "name", "in": "path", "required": true, "schema": string }], "responses": { "200": { "description": "Rolled back" }, "404": problem(), "409": problem() } } },
            "/admin/outbox": { "get": { "summary": "Outbox counts: pending, dead letters, delivered", "security": [{ "bearer": [] }], "responses": { "200": { "description": "Counts" }, "401": problem() } } },
            "/admin/outbox/dead-letters": { "get": { "summary": "Events that ran out of delivery attempts", "security": [{ "bearer": [] }], "responses": { "200": { "description": "Dead letters, oldest first" }, "401": problem() } } },
            "/admin/outbox/dead-letters/replay": { "post": { "summary": "Put every dead letter back in the queue", "security": [{ "bearer": [] }], "responses": { "202": { "description": "How many" }, "401": problem() } } },
            "/admin/outbox/dead-letters/{id}/replay": { "post": { "summary": "Put one dead letter back in the queue", "security": [{ "bearer": [] }], "parameters": [{ "name": "id", "in": "path", "required": true, "schema": string }], "responses": { "202": { "description": "Replayed" }, "404": problem() } } },
            "/admin/security-policies": { "get": { "summary": "Security policies in force, their source and the last refresh error", "security": [{ "bearer": [] }], "responses": { "200": { "description": "Status" }, "401": problem() } } },
            "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "Alive" } } } },
            "/readyz": { "get": { "summary": "Readiness: database and password policy", "responses": { "200": { "description": "Ready" }, "503": { "description": "Not ready" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "Text format" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Problem": { "type": "object", "properties": {
                "type": string, "title": string, "status": { "type": "integer" }, "detail": string,
                "findings": { "type": "array", "items": { "type": "object", "properties": { "code": string, "message": string } } }
            }}}
        }
    }))
}
