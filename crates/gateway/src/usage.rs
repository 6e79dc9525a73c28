//! Reading token usage out of provider answers as they stream past (pure).
//!
//! Every provider reports usage in the answer itself: Anthropic in `message_start` and
//! `message_delta` events (or the message), OpenAI Chat Completions in the last chunk (the
//! gateway asks for it with `stream_options.include_usage`) or the completion, the Responses API
//! in `response.completed` (or the response), Gemini in `usageMetadata` of every chunk (the
//! latest is the whole figure). Elsewhere each field keeps the largest value seen, since
//! Anthropic reports input at the start and output at the end of a stream.

use codemill_core::config::ProviderApi;
use codemill_core::cost::Usage;
use serde_json::Value;

/// Whole (non-streamed) bodies larger than this are not parsed for usage.
const JSON_CAP: usize = 32 * 1024 * 1024;
/// A single SSE line longer than this is skipped.
const LINE_CAP: usize = 8 * 1024 * 1024;

/// Accumulates usage from the bytes of one answer.
#[derive(Debug)]
pub(crate) struct UsageReader {
    api: ProviderApi,
    streamed: bool,
    pending: Vec<u8>,
    overflow: bool,
    usage: Usage,
    model: Option<String>,
}

impl UsageReader {
    pub(crate) fn new(api: ProviderApi, streamed: bool) -> UsageReader {
        UsageReader {
            api,
            streamed,
            pending: Vec::new(),
            overflow: false,
            usage: Usage::default(),
            model: None,
        }
    }

    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if !self.streamed {
            if self.pending.len() + bytes.len() > JSON_CAP {
                self.overflow = true;
            } else {
                self.pending.extend_from_slice(bytes);
            }
            return;
        }
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if !self.overflow {
                self.sse_line(&line);
            }
            self.overflow = false;
        }
        if self.pending.len() > LINE_CAP {
            self.pending.clear();
            self.overflow = true;
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let Some(data) = text.trim_end().strip_prefix("data:") else {
            return;
        };
        if let Ok(value) = serde_json::from_str::<Value>(data.trim_start()) {
            self.observe(&value);
        }
    }

    /// The usage and model seen, once the answer has ended.
    pub(crate) fn finish(mut self) -> (Usage, Option<String>) {
        if self.streamed {
            let rest = std::mem::take(&mut self.pending);
            self.sse_line(&rest);
        } else if !self.overflow
            && let Ok(value) = serde_json::from_slice::<Value>(&self.pending)
        {
            self.observe(&value);
        }
        (self.usage, self.model)
    }

    /// One JSON object of the answer: an SSE event or the whole body.
    fn observe(&mut self, v: &Value) {
        let found = match self.api {
            ProviderApi::Anthropic | ProviderApi::Demo => {
                if let Some(m) = v.pointer("/message/model").and_then(Value::as_str) {
                    self.model = Some(m.to_string());
                }
                v.pointer("/message/usage")
                    .or_else(|| v.get("usage"))
                    .map(anthropic)
            }
            ProviderApi::OpenaiChat => v.get("usage").filter(|u| u.is_object()).map(chat),
            ProviderApi::OpenaiResponses => {
                if let Some(m) = v.pointer("/response/model").and_then(Value::as_str) {
                    self.model = Some(m.to_string());
                }
                v.pointer("/response/usage")
                    .or_else(|| v.get("usage"))
                    .filter(|u| u.is_object())
                    .map(responses)
            }
            ProviderApi::Gemini => {
                if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
                    self.model = Some(m.to_string());
                }
                v.get("usageMetadata").map(gemini)
            }
        };
        if self.model.is_none()
            && let Some(m) = v.get("model").and_then(Value::as_str)
        {
            self.model = Some(m.to_string());
        }
        if let Some(u) = found {
            // Gemini repeats the whole figure in every chunk (the cached part may only show
            // later): the latest wins. Elsewhere fields arrive separately and only grow.
            if self.api == ProviderApi::Gemini {
                self.usage = u;
                return;
            }
            self.usage = Usage {
                input_tokens: self.usage.input_tokens.max(u.input_tokens),
                output_tokens: self.usage.output_tokens.max(u.output_tokens),
                cache_read_tokens: self.usage.cache_read_tokens.max(u.cache_read_tokens),
                cache_write_tokens: self.usage.cache_write_tokens.max(u.cache_write_tokens),
            };
        }
    }
}

fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Anthropic: `input_tokens` excludes cached input, which is reported separately.
fn anthropic(u: &Value) -> Usage {
    Usage {
        input_tokens: n(u, "/input_tokens"),
        output_tokens: n(u, "/output_tokens"),
        cache_read_tokens: n(u, "/cache_read_input_tokens"),
        cache_write_tokens: n(u, "/cache_creation_input_tokens"),
    }
}

/// Chat Completions: `prompt_tokens` includes the cached part.
fn chat(u: &Value) -> Usage {
    let cached = n(u, "/prompt_tokens_details/cached_tokens");
    Usage {
        input_tokens: n(u, "/prompt_tokens").saturating_sub(cached),
        output_tokens: n(u, "/completion_tokens"),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    }
}

/// Responses: `input_tokens` includes the cached part.
fn responses(u: &Value) -> Usage {
    let cached = n(u, "/input_tokens_details/cached_tokens");
    Usage {
        input_tokens: n(u, "/input_tokens").saturating_sub(cached),
        output_tokens: n(u, "/output_tokens"),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    }
}

/// Gemini: `promptTokenCount` includes cached content; thinking tokens are billed as output.
fn gemini(u: &Value) -> Usage {
    let cached = n(u, "/cachedContentTokenCount");
    Usage {
        input_tokens: n(u, "/promptTokenCount").saturating_sub(cached),
        output_tokens: n(u, "/candidatesTokenCount") + n(u, "/thoughtsTokenCount"),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(api: ProviderApi, streamed: bool, chunks: &[&str]) -> (Usage, Option<String>) {
        let mut r = UsageReader::new(api, streamed);
        for c in chunks {
            r.feed(c.as_bytes());
        }
        r.finish()
    }

    #[test]
    fn anthropic_stream_takes_input_from_start_and_output_from_delta() {
        // Split mid-line: chunks do not follow event boundaries.
        let (u, model) = read(
            ProviderApi::Anthropic,
            true,
            &[
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":120,\"cache_read_input_tokens\":30,\"cache_creation_input_tokens\":7,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_bl",
                "ock_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}",
            ],
        );
        assert_eq!(
            u,
            Usage {
                input_tokens: 120,
                output_tokens: 42,
                cache_read_tokens: 30,
                cache_write_tokens: 7
            }
        );
        assert_eq!(model.as_deref(), Some("claude-x"));
    }

    #[test]
    fn anthropic_message() {
        let (u, model) = read(
            ProviderApi::Anthropic,
            false,
            &[
                "{\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":5,",
                "\"output_tokens\":9}}",
            ],
        );
        assert_eq!((u.input_tokens, u.output_tokens), (5, 9));
        assert_eq!(model.as_deref(), Some("m"));
    }

    #[test]
    fn chat_final_chunk_and_completion_split_cached_input() {
        let (u, _) = read(
            ProviderApi::OpenaiChat,
            true,
            &[
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":8,\"prompt_tokens_details\":{\"cached_tokens\":60}}}\n\n",
                "data: [DONE]\n\n",
            ],
        );
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (40, 60, 8)
        );
        let (u, _) = read(
            ProviderApi::OpenaiChat,
            false,
            &["{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}"],
        );
        assert_eq!((u.input_tokens, u.output_tokens), (3, 4));
    }

    #[test]
    fn responses_completed_event_and_body() {
        let (u, model) = read(
            ProviderApi::OpenaiResponses,
            true,
            &[
                "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"item\":{}}\n\n",
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"model\":\"gpt-x\",\"usage\":{\"input_tokens\":50,\"input_tokens_details\":{\"cached_tokens\":20},\"output_tokens\":6}}}\n\n",
            ],
        );
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (30, 20, 6)
        );
        assert_eq!(model.as_deref(), Some("gpt-x"));
        let (u, _) = read(
            ProviderApi::OpenaiResponses,
            false,
            &["{\"usage\":{\"input_tokens\":2,\"output_tokens\":1}}"],
        );
        assert_eq!((u.input_tokens, u.output_tokens), (2, 1));
    }

    #[test]
    fn gemini_chunks_are_cumulative() {
        let (u, model) = read(
            ProviderApi::Gemini,
            true,
            &[
                "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":1},\"modelVersion\":\"gemini-x\"}\r\n\r\n",
                "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":5,\"thoughtsTokenCount\":2,\"cachedContentTokenCount\":4}}\r\n\r\n",
            ],
        );
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (6, 4, 7)
        );
        assert_eq!(model.as_deref(), Some("gemini-x"));
    }

    #[test]
    fn garbage_gives_nothing() {
        let (u, m) = read(ProviderApi::Anthropic, false, &["not json"]);
        assert_eq!(u, Usage::default());
        assert!(m.is_none());
    }
}
