//! Error answers in each provider's own shape, so every agent CLI reports the gateway's reason
//! as it would a provider's (pure).

use codemill_core::config::ProviderApi;
use serde_json::{Value, json};

/// The body of an error answer with `status` and `message` for `api`.
pub(crate) fn body(api: ProviderApi, status: u16, kind: Kind, message: &str) -> Value {
    match api {
        ProviderApi::Anthropic | ProviderApi::Demo => json!({
            "type": "error",
            "error": {"type": kind.anthropic(), "message": message},
        }),
        ProviderApi::OpenaiChat | ProviderApi::OpenaiResponses => json!({
            "error": {"message": message, "type": kind.openai(), "param": null, "code": kind.code()},
        }),
        ProviderApi::Gemini => json!({
            "error": {"code": status, "message": message, "status": kind.google()},
        }),
    }
}

/// Why the gateway answers with an error itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No valid per-step token.
    Unauthorized,
    /// A budget is spent.
    Budget,
    /// The gateway cannot do its job (store unreachable, provider unreachable).
    Unavailable,
}

impl Kind {
    fn anthropic(self) -> &'static str {
        match self {
            Kind::Unauthorized => "authentication_error",
            Kind::Budget => "invalid_request_error",
            Kind::Unavailable => "api_error",
        }
    }
    fn openai(self) -> &'static str {
        match self {
            Kind::Unauthorized => "invalid_request_error",
            Kind::Budget => "insufficient_quota",
            Kind::Unavailable => "server_error",
        }
    }
    fn code(self) -> &'static str {
        match self {
            Kind::Unauthorized => "invalid_api_key",
            Kind::Budget => "budget_exceeded",
            Kind::Unavailable => "gateway_unavailable",
        }
    }
    fn google(self) -> &'static str {
        match self {
            Kind::Unauthorized => "UNAUTHENTICATED",
            Kind::Budget => "FAILED_PRECONDITION",
            Kind::Unavailable => "UNAVAILABLE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_gets_its_shape() {
        let a = body(ProviderApi::Anthropic, 400, Kind::Budget, "budget exceeded");
        assert_eq!(a["error"]["message"], "budget exceeded");
        assert_eq!(a["type"], "error");
        let o = body(ProviderApi::OpenaiResponses, 400, Kind::Budget, "m");
        assert_eq!(o["error"]["code"], "budget_exceeded");
        let g = body(ProviderApi::Gemini, 400, Kind::Budget, "m");
        assert_eq!(g["error"]["code"], 400);
        assert_eq!(g["error"]["status"], "FAILED_PRECONDITION");
    }
}
