//! `http`: a GET of the application's URL must answer 2xx.

use super::{retry, Check, Verdict, VerifyCtx};
use std::time::Instant;

pub struct HttpCheck<'a> {
    pub url: &'a str,
}

#[async_trait::async_trait]
impl Check for HttpCheck<'_> {
    fn describe(&self) -> String {
        format!("http {}", self.url)
    }

    fn needs_secret(&self) -> bool {
        false
    }

    fn preflight(&self) -> Result<(), String> {
        crate::http::parse(self.url).map(|_| ()).map_err(|e| format!("http verifier: {e}"))
    }

    async fn verify(&self, ctx: &VerifyCtx<'_>) -> Verdict {
        let deadline = Instant::now() + ctx.timeout;
        retry(deadline, || crate::http::get_ok(self.url, deadline)).await
    }
}
