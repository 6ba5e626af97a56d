//! The JSON calls the end-to-end tests make of a running service.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// `POST url` with a JSON body; the status and the JSON answer (null when it is not JSON).
pub async fn post(client: &Client, url: String, body: Value) -> (StatusCode, Value) {
    let response = client.post(url).json(&body).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET url`; the JSON answer.
pub async fn get_json(client: &Client, url: String) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("a JSON body")
}

/// `GET url`; the body as text.
pub async fn get_text(client: &Client, url: String) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("a body")
}

/// One response: status, `content-type` (without parameters), `Location`, JSON body (or null).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The media type of `content-type`, without parameters; empty when there is none.
    pub content_type: String,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The body as JSON; null when it is not JSON.
    pub body: Value,
}

impl Answer {
    /// The problem type of a problem document without its `urn:user-service:problem:` prefix;
    /// empty for anything else.
    pub fn problem_kind(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|kind| kind.strip_prefix("urn:user-service:problem:"))
            .unwrap_or("")
    }
}

/// `method url`, with a bearer token and a JSON body when given.
pub async fn call(
    client: &Client,
    method: Method,
    url: String,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = client.request(method, url);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type")
        .map(|value| value.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let location = header("location");
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        content_type,
        location,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}
