//! The notices API body (`POST /api/v1/notices`), sent over HTTP to the fuzzing app.

use super::{ANSWER_WITHIN, harness};

/// Longest error message the API may answer: errors quote a short prefix of the
/// input, never the input.
const MAX_ERROR_BYTES: usize = 1024;

/// One body for `POST /api/v1/notices`. Invariants: answered in bounded time, never
/// with a server error; a refusal is a short `{"error": ...}`; a success stored or
/// pushed one copy per userId; and no user's pending notices ever exceed
/// `limits.notices` (count and bytes), however many calls came before.
pub fn notices_api(data: &[u8]) {
    let h = harness();
    let url = format!("http://{}/api/v1/notices", h.addr);
    let (status, body) = h.rt.block_on(async {
        let call = reqwest::Client::new()
            .post(url)
            .bearer_auth("fuzz-service-token")
            .header("content-type", "application/json")
            .body(data.to_vec())
            .send();
        let resp = tokio::time::timeout(ANSWER_WITHIN, call)
            .await
            .expect("every API call is answered in bounded time")
            .expect("the API answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("a body"))
    });
    assert!(status < 500, "server error {status}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    if status != 200 {
        let err = answer["error"].as_str().expect("an error message");
        assert!(!err.is_empty(), "an empty error");
        assert!(
            err.len() <= MAX_ERROR_BYTES,
            "a {}-byte error message quotes too much",
            err.len()
        );
        return;
    }
    let request: serde_json::Value = serde_json::from_slice(data).expect("a 200 had a JSON body");
    let users: Vec<&str> = request["userIds"]
        .as_array()
        .expect("userIds")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    let copies = answer["stored"].as_u64().unwrap_or(0) + answer["pushed"].as_u64().unwrap_or(0);
    assert_eq!(
        copies as usize,
        users.len(),
        "one copy per userId: {answer}"
    );
    let limits = &h.state.cfg.limits.notices;
    for u in users {
        let pending = h.state.notices.pending(u);
        let bytes: usize = pending
            .iter()
            .map(crate::pipeline::notices::notice_bytes)
            .sum();
        assert!(
            pending.len() <= limits.max_pending_per_user,
            "{u}: {} pending",
            pending.len()
        );
        assert!(
            bytes <= limits.max_pending_bytes_per_user,
            "{u}: {bytes} pending bytes"
        );
    }
}
