//! The live board's columns rendered once per move of the event stream and shared by every
//! viewer of this node: each open board streams the columns again whenever any job moves, and
//! rendering them reads every ticket's latest job, so without sharing, the work grew with the
//! number of people watching.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::AppState;

/// Project filters remembered at most; past that the cache starts again (filters are a few
/// project names in practice, but they come from the query string).
const FILTERS: usize = 64;

/// Columns' HTML per project filter (`None`: every project), with the stream position the
/// store had reached before they were read.
type Rendered = HashMap<Option<String>, (i64, Arc<str>)>;

/// The latest render per filter. Held while one viewer renders, so the others waiting for the
/// same move take that render instead of making their own.
#[derive(Debug, Default)]
pub(crate) struct BoardCache {
    rendered: Mutex<Rendered>,
}

impl BoardCache {
    /// The board's columns (of `project` only, when given) as of stream position `pos` or later.
    pub(crate) async fn columns(
        &self,
        app: &AppState,
        project: Option<&str>,
        pos: i64,
    ) -> Result<Arc<str>, codemill_store::StoreError> {
        let mut rendered = self.rendered.lock().await;
        let key = project.map(str::to_owned);
        if let Some((at, html)) = rendered.get(&key)
            && *at >= pos
        {
            return Ok(html.clone());
        }
        // Read before the columns, so the columns are at least as new as the position kept.
        let at = app.store().last_event_pos().await?.max(pos);
        let (_, columns) = super::board_columns(app, project).await?;
        let html: Arc<str> = super::columns_html(&columns).into();
        if rendered.len() >= FILTERS && !rendered.contains_key(&key) {
            rendered.clear();
        }
        rendered.insert(key, (at, html.clone()));
        Ok(html)
    }
}
