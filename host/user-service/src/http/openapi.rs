//! The OpenAPI 3.1 document served at `/openapi.json`: the contract, checked by
//! `tests/tests/all/public_api.rs`, which drives every operation and validates every response
//! (status, media type, body) against this document.
//!
//! Every operation lists every status it can answer, with its schema; problem responses name
//! the `type`s they can carry. Request bodies refuse unknown properties as the server does, and
//! carry the bounds the server checks (its byte limits are stated in `description`s: JSON
//! Schema counts code points).

use crate::{
    domain::{
        MAX_DISPLAY_NAME_BYTES, email_verification::MAX_VERIFICATION_TOKEN_BYTES,
        passwords::MAX_RESET_TOKEN_BYTES,
    },
    email::MAX_EMAIL_BYTES,
    flows::MAX_PASSWORD_BYTES,
};
use axum::Json;
use serde_json::{Map, Value, json};

/// A problem response whose `type` is one of `kinds` (`urn:user-service:problem:<kind>`).
fn problem(description: &str, kinds: &[&str]) -> Value {
    let types: Vec<String> = kinds
        .iter()
        .map(|kind| format!("urn:user-service:problem:{kind}"))
        .collect();
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": {
            "allOf": [
                { "$ref": "#/components/schemas/Problem" },
                { "properties": { "type": { "enum": types } } }
            ]
        } } }
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn no_content(description: &str) -> Value {
    json!({ "description": description })
}

fn request_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

/// A closed object: these properties (the `required` ones required), nothing else.
fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties, "additionalProperties": false })
}

/// The responses every operation can give, whatever it does.
fn common(responses: &mut Map<String, Value>) {
    responses.insert(
        "431".into(),
        problem(
            "Too many or too large header fields (`[http] max-headers`, `max-header-bytes`)",
            &["headers-too-large"],
        ),
    );
    responses.insert(
        "500".into(),
        problem("A failure on the service's side", &["internal"]),
    );
}

/// The responses of every operation with a JSON request body, on top of [`common`].
fn json_body_errors(responses: &mut Map<String, Value>, bad_request: &[&str]) {
    let mut kinds = vec!["malformed-json", "invalid-body"];
    kinds.extend_from_slice(bad_request);
    responses.insert(
        "400".into(),
        problem(
            "The body is not JSON, does not match the schema, or a value is refused",
            &kinds,
        ),
    );
    responses.insert(
        "413".into(),
        problem(
            "The body is larger than `max-body-bytes`",
            &["body-too-large"],
        ),
    );
    responses.insert(
        "415".into(),
        problem(
            "The body is not sent as `application/json`",
            &["unsupported-media-type"],
        ),
    );
}

/// An operation: `responses` plus the common ones (and the JSON-body ones when `body` is given).
fn operation(
    summary: &str,
    body: Option<Value>,
    bad_request: &[&str],
    responses: Value,
    extra: Value,
) -> Value {
    let mut all = match responses {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    common(&mut all);
    let mut operation = json!({ "summary": summary });
    if let Some(body) = body {
        json_body_errors(&mut all, bad_request);
        operation["requestBody"] = request_body(body);
    }
    operation["responses"] = Value::Object(all);
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            operation[key] = value;
        }
    }
    operation
}

/// An admin operation: bearer token; without a configured token the admin API answers 404.
/// `operation` with a required JSON request body of `schema`.
fn with_request_body(mut operation: Value, schema: Value) -> Value {
    if let Value::Object(map) = &mut operation {
        map.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": schema } } }),
        );
    }
    operation
}

fn admin(
    summary: &str,
    responses: Value,
    not_found_kinds: &[&str],
    path_parameter: Option<&str>,
) -> Value {
    let mut responses = match responses {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    responses.insert(
        "401".into(),
        problem("No or a wrong admin bearer token", &["unauthorized"]),
    );
    let mut kinds = vec!["not-found"];
    kinds.extend_from_slice(not_found_kinds);
    responses.insert(
        "404".into(),
        problem(
            "The admin API is disabled (no admin token configured), or no such resource",
            &kinds,
        ),
    );
    let mut extra = json!({ "security": [{ "bearer": [] }] });
    if let Some(name) = path_parameter {
        extra["parameters"] = json!([{ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }]);
    }
    operation(summary, None, &[], Value::Object(responses), extra)
}

/// An operation that needs a session (`Authorization: Bearer <session_token>`): its `401`
/// carries `unauthenticated` on top of `unauthorized_kinds`.
fn with_session(
    summary: &str,
    body: Option<Value>,
    bad_request: &[&str],
    responses: Value,
    unauthorized_kinds: &[&str],
) -> Value {
    let mut responses = match responses {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut kinds = vec!["unauthenticated"];
    kinds.extend_from_slice(unauthorized_kinds);
    responses.insert(
        "401".into(),
        problem(
            "No, a malformed, unknown, expired or revoked session token; or what the operation names",
            &kinds,
        ),
    );
    operation(
        summary,
        body,
        bad_request,
        Value::Object(responses),
        json!({ "security": [{ "session": [] }] }),
    )
}

/// `GET /openapi.json`
pub async fn document() -> Json<Value> {
    Json(build())
}

/// The document.
pub fn build() -> Value {
    let email = json!({
        "type": "string", "format": "idn-email", "minLength": 5, "maxLength": MAX_EMAIL_BYTES,
        "pattern": "^\\s*[^@\\s]+@[^@\\s]+\\.[^@\\s]+\\s*$",
        "description": "Stored in one canonical form: NFC, local part lower-cased, domain in IDNA ASCII form; \
            at most 254 bytes in that form. Refused with `invalid-email`: bidirectional and other invisible \
            format characters, IP-address domains, domains without a dot."
    });
    let password = json!({
        "type": "string", "maxLength": MAX_PASSWORD_BYTES,
        "description": format!("Any Unicode; the policy asks 15 to 64 code points after NFKC by default. \
            More than {MAX_PASSWORD_BYTES} bytes: refused (`too-long`, or wrong credentials).")
    });
    let captcha_token = json!({ "type": ["string", "null"], "description": "The CAPTCHA widget's token, when one is required" });
    let nullable = |schema: &Value| {
        let mut schema = schema.clone();
        schema["type"] = json!(["string", "null"]);
        schema
    };
    let optional_email = nullable(&email);
    let optional_password = nullable(&password);
    let string = json!({ "type": "string" });
    let id = json!({ "type": "string", "pattern": "^[0-9a-f]{32}$" });
    let findings = json!({ "type": "array", "items": { "$ref": "#/components/schemas/Finding" } });
    let captcha = ["captcha-failed", "captcha-challenge"];
    let status_object = |properties: Value| {
        let required: Vec<String> = properties
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default();
        json!({ "type": "object", "required": required, "properties": properties, "additionalProperties": false })
    };
    let plugin = object(
        &[
            "name",
            "kind",
            "enabled",
            "version",
            "sha256",
            "loaded_at",
            "decisions_served",
            "previous_version",
            "last_error",
        ],
        json!({
            "name": string, "kind": string, "enabled": { "type": "boolean" },
            "version": { "type": ["string", "null"] }, "sha256": { "type": ["string", "null"] },
            "loaded_at": { "type": ["integer", "null"] }, "decisions_served": { "type": ["integer", "null"] },
            "previous_version": { "type": ["string", "null"] }, "last_error": { "type": ["string", "null"] },
            "source": string, "require_signature": { "type": "boolean" }, "pending_source": { "type": ["string", "null"] },
            "origin": {}, "digest": { "type": ["string", "null"] },
            "verified_by": { "type": ["array", "null"], "items": string }
        }),
    );
    let swap = object(
        &["outcome", "version", "sha256"],
        json!({ "outcome": { "enum": ["swapped", "unchanged", "rolled-back"] }, "from": { "type": ["string", "null"] }, "version": string, "sha256": string }),
    );
    // A slot's desired state, as the rollout endpoints answer it.
    let desired = json!({ "type": "object", "required": ["plugin", "revision", "stage", "status"], "properties": {
        "plugin": string, "revision": { "type": "integer" }, "stage": { "enum": ["serving", "shadow", "canary"] },
        "serving_digest": { "type": ["string", "null"] }, "candidate_digest": { "type": ["string", "null"] },
        "plan": {}, "note": { "type": ["string", "null"] }, "status": string
    } });
    let desired_request = json!({ "type": "object", "additionalProperties": false, "properties": {
                "component": { "type": "string", "description": "the component, base64" },
                "digest": { "type": "string", "pattern": "^sha256:[0-9a-f]{64}$" },
                "stage": { "enum": ["serving", "shadow", "canary"] },
                "percent": { "type": "number", "minimum": 0, "maximum": 100 },
                "sample-percent": { "type": "number", "minimum": 0, "maximum": 100 },
                "max-concurrent": { "type": "integer", "minimum": 1 },
                "salt": string,
                "abort": { "type": "object", "additionalProperties": false, "properties": { "error-margin": { "type": "number" }, "min-decisions": { "type": "integer", "minimum": 0 } } },
                "settings": { "type": "object", "additionalProperties": string }
            } });
    let rollout_report = json!({ "type": "object", "required": ["plugin", "stage", "replicas", "diff"], "properties": {
                    "plugin": string, "revision": { "type": ["integer", "null"] }, "stage": { "enum": ["serving", "shadow", "canary"] },
                    "serving_digest": { "type": ["string", "null"] }, "candidate_digest": { "type": ["string", "null"] },
                    "plan": {}, "note": { "type": ["string", "null"] },
                    "replicas": { "type": "array", "items": string },
                    "diff": { "type": "object", "required": ["serving", "candidate", "unchanged", "stricter", "looser", "reclassified", "shadow_skipped", "samples"] }
                } });
    let fleet_view = json!({ "type": "object", "required": ["desired", "replicas", "lagging", "failed"], "properties": {
                    "desired": { "type": "array", "items": desired.clone() },
                    "replicas": { "type": "array", "items": { "type": "object", "required": ["replica", "heartbeat_ms", "heartbeat_age_ms", "stale", "lagging", "failed", "slots"] } },
                    "lagging": { "type": "array", "items": string },
                    "failed": { "type": "array", "items": string }
                } });
    let replayed = status_object(json!({ "replayed": { "type": "integer", "minimum": 0 } }));
    let revoked = status_object(json!({ "revoked": { "type": "integer", "minimum": 0 } }));
    let session = json!({ "$ref": "#/components/schemas/Session" });
    let user = json!({ "$ref": "#/components/schemas/User" });
    let session_schema = object(
        &[
            "id",
            "user_id",
            "created_at",
            "expires_at",
            "idle_expires_at",
            "authenticated_with",
        ],
        json!({
            "id": id, "user_id": id,
            "created_at": { "type": "integer", "description": "Unix seconds" },
            "expires_at": { "type": "integer", "description": "Unix seconds: the absolute end (`sessions.absolute-lifetime-s` after login)" },
            "idle_expires_at": { "type": "integer", "description": "Unix seconds: the end if unused (`sessions.idle-timeout-s` after the last recorded use, at most `expires_at`)" },
            "authenticated_with": { "enum": ["password"] },
            "current": { "type": "boolean", "description": "In lists: the caller's session" }
        }),
    );
    let user_schema = object(
        &[
            "id",
            "email",
            "email_display",
            "display_name",
            "email_verified",
            "pending_email",
            "created_at",
        ],
        json!({
            "id": id, "email": { "type": "string", "description": "The canonical form" },
            "email_display": { "type": "string", "description": "As typed" },
            "display_name": { "type": ["string", "null"] },
            "email_verified": { "type": "boolean" },
            "pending_email": { "type": ["string", "null"], "description": "A new address waiting for verification" },
            "created_at": { "type": "integer", "description": "Unix seconds" }
        }),
    );

    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "User Service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every error is `application/problem+json` (RFC 9457) with a stable `type`. \
                Any path not listed answers 404 `not-found`; a listed path with another method answers \
                405 `method-not-allowed` with `Allow`. Request heads the HTTP layer itself cannot parse, \
                or beyond four times the header limits, get that layer's body-less 400 or 431."
        },
        "paths": {
            "/v1/users": { "post": operation(
                "Register",
                Some(object(&["email", "password"], json!({
                    "email": email, "password": password,
                    "display_name": { "type": ["string", "null"], "maxLength": MAX_DISPLAY_NAME_BYTES, "description": "Trimmed; at most 200 bytes" },
                    "captcha_token": captcha_token,
                    "tenant": { "type": ["string", "null"], "description": "Tenant whose allowed email domains apply (default `default`)" }
                }))),
                &["invalid-email", "invalid-display-name"],
                json!({
                    "201": json_response("Registered", object(&["id", "email", "email_display", "display_name", "warnings"], json!({
                        "id": id, "email": { "type": "string", "description": "The canonical form" },
                        "email_display": { "type": "string", "description": "As typed" },
                        "display_name": { "type": ["string", "null"] },
                        "warnings": { "type": "array", "items": string }
                    }))),
                    "401": problem("A CAPTCHA is required (`captcha-on-register`)", &["captcha-required"]),
                    "403": problem("The CAPTCHA was refused", &captcha),
                    "409": problem("An account has this address (in canonical form)", &["email-taken"]),
                    "422": problem("The password is refused (every finding listed), or the tenant does not take this domain", &["weak-password", "email-domain-not-allowed"])
                }),
                json!({}),
            )},
            "/v1/sessions": { "post": operation(
                "Log in",
                Some(object(&["email", "password"], json!({ "email": email, "password": password, "captcha_token": captcha_token }))),
                &["invalid-email"],
                json!({
                    "200": json_response("Logged in: a new session and its token (shown once). `reset_required` when the password is now known to be breached", object(&["user_id", "reset_required", "password_breached", "session_token", "session"], json!({
                        "user_id": id, "reset_required": { "type": "boolean" }, "password_breached": { "type": "boolean" },
                        "session_token": { "type": "string", "pattern": "^[A-Za-z0-9_-]{43}$", "description": "256 random bits, base64url; send as `Authorization: Bearer <session_token>`. Only its SHA-256 is stored." },
                        "session": session
                    }))),
                    "401": problem("Wrong email or password, or a CAPTCHA is required (too many failures for the account or the client)", &["invalid-credentials", "captcha-required"]),
                    "403": problem("The CAPTCHA was refused, or the address is not verified yet (`flows.require-verified-email`)", &["captcha-failed", "captcha-challenge", "email-not-verified"]),
                    "429": problem("The account is locked until a password reset", &["account-locked"])
                }),
                json!({}),
            ),
                "get": with_session("This user's live sessions (never their tokens)", None, &[], json!({
                    "200": json_response("Sessions, newest first; `current` marks the caller's", object(&["sessions"], json!({ "sessions": { "type": "array", "items": {
                        "allOf": [session.clone()], "required": ["current"], "properties": { "current": { "type": "boolean" } }
                    } } })))
                }), &[]),
                "delete": with_session("End every other session of this user", None, &[], json!({
                    "200": json_response("How many ended", revoked.clone())
                }), &[])
            },
            "/v1/sessions/current": {
                "get": with_session("Who am I: this session and its user", None, &[], json!({
                    "200": json_response("The session and its user", object(&["session", "user"], json!({ "session": session, "user": user })))
                }), &[]),
                "delete": with_session("Log out: end this session", None, &[], json!({
                    "204": no_content("Ended")
                }), &[])
            },
            "/v1/users/me": {
                "get": with_session("This session's user", None, &[], json!({
                    "200": json_response("The user", user.clone())
                }), &[]),
                "patch": with_session(
                    "Change the display name, or the email (with the current password; the new address replaces the old one once verified)",
                    Some(object(&[], json!({
                        "display_name": { "type": ["string", "null"], "maxLength": MAX_DISPLAY_NAME_BYTES, "description": "Trimmed; `null` or blank removes it; at most 200 bytes" },
                        "email": optional_email,
                        "current_password": optional_password,
                        "captcha_token": captcha_token
                    }))),
                    &["invalid-email", "invalid-display-name"],
                    json!({
                        "200": json_response("The user; `pending_email` while a new address waits for verification", user.clone()),
                        "403": problem("The CAPTCHA was refused", &captcha),
                        "409": problem("Another account has the new address", &["email-taken"]),
                        "429": problem("The account is locked until a password reset", &["account-locked"])
                    }),
                    &["invalid-credentials", "captcha-required"],
                ),
                "delete": with_session(
                    "Delete the account (with the current password): credentials, sessions, tokens go; `UserDeletedEventV1`",
                    Some(object(&["current_password"], json!({ "current_password": password, "captcha_token": captcha_token }))),
                    &[],
                    json!({
                        "204": no_content("Deleted"),
                        "403": problem("The CAPTCHA was refused", &captcha),
                        "429": problem("The account is locked until a password reset", &["account-locked"])
                    }),
                    &["invalid-credentials", "captcha-required"],
                )
            },
            "/v1/users/{id}": { "get": operation(
                "A user: the user itself (session token) or an admin (admin token)",
                None,
                &[],
                json!({
                    "200": json_response("The user", user.clone()),
                    "401": problem("No, a malformed, unknown, expired or revoked token", &["unauthenticated"]),
                    "404": problem("No such user, or not the caller's", &["not-found"])
                }),
                json!({
                    "security": [{ "session": [] }, { "bearer": [] }],
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]
                }),
            )},
            "/v1/email/verifications": { "post": operation(
                "Verify an address with the token from EmailVerificationRequestedEventV1",
                Some(object(&["token"], json!({ "token": { "type": "string", "maxLength": MAX_VERIFICATION_TOKEN_BYTES } }))),
                &["invalid-verification-token"],
                json!({
                    "200": json_response("Verified: the address is the account's", object(&["user_id", "email", "email_verified"], json!({
                        "user_id": id, "email": string, "email_verified": { "const": true }
                    }))),
                    "409": problem("A pending change to an address another account took meanwhile", &["email-taken"])
                }),
                json!({}),
            )},
            "/v1/email/verification-requests": { "post": operation(
                "Send the verification again (always 202; at most one per `verification-resend-interval-s` per account)",
                Some(object(&["email"], json!({ "email": email }))),
                &["invalid-email"],
                json!({
                    "202": json_response("Accepted", object(&["status"], json!({ "status": { "const": "accepted" } })))
                }),
                json!({}),
            )},
            "/v1/password/change": { "post": operation(
                "Change password: with a session (other sessions end) or, without one, with `email` (every session ends); proving the current password counts as a login attempt",
                Some(object(&["current_password", "new_password"], json!({ "email": optional_email, "current_password": password, "new_password": password, "captcha_token": captcha_token }))),
                &["invalid-email"],
                json!({
                    "204": no_content("Changed"),
                    "401": problem("Wrong email or current password, a CAPTCHA is required, or neither a session nor `email`, or a bad session token", &["invalid-credentials", "captcha-required", "unauthenticated"]),
                    "403": problem("The CAPTCHA was refused", &captcha),
                    "422": problem("The new password is refused", &["weak-password"]),
                    "429": problem("The account is locked until a password reset", &["account-locked"])
                }),
                json!({}),
            )},
            "/v1/password/reset-requests": { "post": operation(
                "Request a reset (always 202: no user enumeration)",
                Some(object(&["email"], json!({ "email": email, "captcha_token": captcha_token }))),
                &["invalid-email"],
                json!({
                    "202": json_response("Accepted", object(&["status"], json!({ "status": { "const": "accepted" } }))),
                    "401": problem("A CAPTCHA is required (`captcha-on-reset-request`)", &["captcha-required"]),
                    "403": problem("The CAPTCHA was refused", &captcha)
                }),
                json!({}),
            )},
            "/v1/password/resets": { "post": operation(
                "Complete a reset",
                Some(object(&["token", "new_password"], json!({ "token": { "type": "string", "maxLength": MAX_RESET_TOKEN_BYTES }, "new_password": password }))),
                &["invalid-reset-token"],
                json!({
                    "204": no_content("Reset"),
                    "422": problem("The new password is refused", &["weak-password"])
                }),
                json!({}),
            )},
            "/v1/password/check": { "post": operation(
                "Dry-run the password policy and breach check",
                Some(object(&["password"], json!({
                    "password": password,
                    "email": { "type": ["string", "null"], "description": "A context word; not validated" },
                    "display_name": { "type": ["string", "null"], "description": "A context word" },
                    "has_mfa": { "type": "boolean" }
                }))),
                &[],
                json!({
                    "200": json_response("Verdict, findings, length, breach outcome", object(&["verdict", "findings"], json!({
                        "verdict": { "enum": ["allow", "deny", "challenge"] },
                        "findings": findings,
                        "length": { "type": "integer", "minimum": 0 },
                        "breach": { "oneOf": [
                            object(&["outcome", "count"], json!({ "outcome": { "const": "breached" }, "count": { "type": "integer", "minimum": 0 } })),
                            object(&["outcome"], json!({ "outcome": { "enum": ["clean", "unknown"] } }))
                        ] },
                        "warnings": { "type": "array", "items": string }
                    })))
                }),
                json!({}),
            )},
            "/admin/users/{id}/sessions": { "delete": admin("End every session of a user", json!({
                "200": json_response("How many ended", revoked)
            }), &["unknown-user"], Some("id")) },
            "/admin/plugins": { "get": admin("List plugins", json!({
                "200": json_response("Plugins", object(&["plugins"], json!({ "plugins": { "type": "array", "items": plugin } })))
            }), &[], None) },
            "/admin/plugins/{name}/reload": { "post": admin("Reload a plugin from its file", json!({
                "200": json_response("Swapped or unchanged", swap.clone()),
                "422": problem("The candidate was rejected; the serving version is unchanged", &["plugin-rejected"])
            }), &["unknown-plugin"], Some("name")) },
            "/admin/plugins/{name}/source": { "post": with_request_body(admin("Point a plugin slot at another source; pulled, verified and compiled off the request path", json!({
                "202": json_response("Accepted; the outcome shows in GET /admin/plugins", object(
                    &["outcome", "plugin", "source", "status"],
                    json!({ "outcome": { "const": "accepted" }, "plugin": string, "source": string, "status": string }),
                )),
                "400": problem("The body or the source reference is not usable", &["invalid-request", "invalid-source"])
            }), &["unknown-plugin"], Some("name")), object(
                &["source"],
                json!({ "source": string, "pull-policy": { "enum": ["always", "if-not-present"] } }),
            )) },
            "/admin/plugins/{name}/rollback": { "post": admin("Roll back to the previous version", json!({
                "200": json_response("Rolled back", swap),
                "409": problem("Nothing to roll back to", &["no-previous-version"])
            }), &["unknown-plugin"], Some("name")) },
            "/admin/outbox": { "get": admin("Outbox counts: pending, dead letters, delivered", json!({
                "200": json_response("Counts", status_object(json!({
                    "pending": { "type": "integer", "minimum": 0 }, "deadLetters": { "type": "integer", "minimum": 0 }, "delivered": { "type": "integer", "minimum": 0 }
                })))
            }), &[], None) },
            "/admin/outbox/dead-letters": { "get": admin("Events that ran out of delivery attempts", json!({
                "200": json_response("Dead letters, oldest first", object(&["deadLetters"], json!({ "deadLetters": { "type": "array", "items": status_object(json!({
                    "id": string, "type": string, "aggregateId": string, "attempts": { "type": "integer" },
                    "lastError": { "type": ["string", "null"] }, "deadAt": { "type": ["integer", "null"], "description": "Unix seconds" },
                    "deliveredTo": { "type": "array", "items": string }
                })) } })))
            }), &[], None) },
            "/admin/outbox/dead-letters/replay": { "post": admin("Put every dead letter back in the queue", json!({
                "202": json_response("How many", replayed.clone())
            }), &[], None) },
            "/admin/outbox/dead-letters/{id}/replay": { "post": admin("Put one dead letter back in the queue", json!({
                "202": json_response("Replayed", replayed)
            }), &["no-such-dead-letter"], Some("id")) },
            "/admin/security-policies": { "get": admin("Security policies in force, their source and the last refresh error", json!({
                "200": json_response("Status", json!({ "type": "object", "required": ["source", "refreshFailures"], "properties": {
                    "source": { "enum": ["configuration-service", "last-known-good", "file-configuration"] },
                    "version": { "type": ["string", "null"] },
                    "fetchedAt": { "type": ["integer", "null"] }, "lastError": { "type": ["string", "null"] },
                    "refreshFailures": { "type": "integer", "minimum": 0 },
                    "policies": { "type": ["object", "null"] }
                } }))
            }), &[], None) },
            "/healthz": { "get": operation("Liveness", None, &[], json!({
                "200": { "description": "Alive", "content": { "text/plain": { "schema": { "const": "ok" } } } }
            }), json!({})) },
            "/readyz": { "get": operation("Readiness: database and password policy", None, &[], json!({
                "200": json_response("Ready", status_object(json!({ "database": { "const": true }, "plugins": { "const": true } }))),
                "503": json_response("Not ready: what is missing (`missing`: the plugin slots with nothing serving)", object(&["database", "plugins"], json!({ "database": { "type": "boolean" }, "plugins": { "type": "boolean" }, "missing": { "type": "array", "items": string } })))
            }), json!({})) },
            "/metrics": { "get": operation("Prometheus metrics", None, &[], json!({
                "200": { "description": "Prometheus text format", "content": { "text/plain": { "schema": string } } }
            }), json!({})) },
            "/openapi.json": { "get": operation("This document", None, &[], json!({
                "200": json_response("OpenAPI 3.1", json!({ "type": "object", "required": ["openapi", "paths"] }))
            }), json!({})) }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "The admin token" },
                "session": { "type": "http", "scheme": "bearer", "description": "A session token from `POST /v1/sessions`" }
            },
            "responses": {
                "NotFound": problem("No such path (any path not listed)", &["not-found"]),
                "MethodNotAllowed": problem("A listed path with a method it does not have; `Allow` lists those it has", &["method-not-allowed"])
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status"],
                    "additionalProperties": false,
                    "properties": {
                        "type": { "type": "string", "pattern": "^urn:user-service:problem:[a-z-]+$" },
                        "title": string,
                        "status": { "type": "integer", "minimum": 400, "maximum": 599 },
                        "detail": string,
                        "findings": findings
                    }
                },
                "Finding": object(&["code", "message"], json!({ "code": string, "message": string })),
                "Session": session_schema,
                "User": user_schema
            }
        }
    });
    // Rollout: desired state, stages, fleet (see README "Rolling a plugin out"); merged
    // separately to stay within `json!`'s recursion limit.
    let rollout = json!({
            "/admin/plugins/{name}/desired": { "put": with_request_body(admin("Set the desired version of a plugin slot for every replica: upload or digest, stage (serving, shadow, canary; a captcha slot has no shadow: 400 stage-unsupported) and share", json!({
                "202": json_response("Written; every replica applies it within a second (see GET /admin/plugins/fleet). With [rollout] artifact-key, this replica first compiled the component and stored the signed artifact, which the others load instead of compiling", desired.clone()),
                "400": problem("The body is not a usable desired state", &["invalid-request", "invalid-stage", "invalid-percent", "invalid-component", "invalid-digest", "digest-mismatch", "component-too-large", "stage-unsupported"]),
                "413": problem("The body is larger than the component limit", &["body-too-large"]),
                "503": problem("The database did not answer", &["database-unavailable"])
            }), &["unknown-plugin", "unknown-component"], Some("name")), desired_request.clone()) },
            "/admin/plugins/{name}/promote": { "post": admin("Make the staged candidate the serving version on every replica", json!({
                "202": json_response("Written", desired.clone()),
                "409": problem("No candidate is staged", &["no-candidate"]),
                "503": problem("The database did not answer", &["database-unavailable"])
            }), &["unknown-plugin"], Some("name")) },
            "/admin/plugins/{name}/abort": { "post": admin("Withdraw the staged candidate on every replica", json!({
                "202": json_response("Written", desired.clone()),
                "409": problem("No candidate is staged", &["no-candidate"]),
                "503": problem("The database did not answer", &["database-unavailable"])
            }), &["unknown-plugin"], Some("name")) },
            "/admin/plugins/{name}/rollout": { "get": admin("The slot's rollout: desired state and the candidate's decision diff over the replicas", json!({
                "200": json_response("The rollout", rollout_report.clone()),
                "503": problem("The database did not answer", &["database-unavailable"])
            }), &["unknown-plugin"], Some("name")) },
            "/admin/plugins/fleet": { "get": admin("Every replica's plugin versions, with the lagging and failed ones flagged", json!({
                "200": json_response("The fleet", fleet_view.clone()),
                "503": problem("The database did not answer", &["database-unavailable"])
            }), &[], None) }
    });
    if let (Some(paths), Value::Object(rollout)) = (document["paths"].as_object_mut(), rollout) {
        paths.extend(rollout);
    }
    document
}
