//! The OpenAPI document at `/openapi.json` lists the API.

use anyhow::Context;
use ferry_tests::Server;
use reqwest::StatusCode;
use serde_json::Value;

use super::TestResult;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_api() -> TestResult {
    let server = Server::start()?;
    let resp = reqwest::get(format!("{}/openapi.json", server.url)).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await?;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().context("paths object")?;
    for p in ["/files/upload", "/commit", "/changes/poll", "/auth/login", "/blocks/{id}", "/files/download"] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert!(paths["/files/upload"].get("post").is_some() && paths["/files/upload"].get("put").is_some());
    // The documented parameters are the ones the server's own upload URLs use.
    let params: Vec<&str> = paths["/files/upload"]["put"]["parameters"]
        .as_array()
        .context("parameters")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"uploadType") && params.contains(&"upload_id"), "{params:?}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    Ok(())
}
