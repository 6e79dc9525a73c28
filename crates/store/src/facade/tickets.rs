//! The store's tickets of the local tracker: creating, reading, editing, comments and status.

use codemill_core::ids::{ProjectName, TicketKey};
use codemill_core::pipeline::TicketStatus;

use crate::{Comment, Link, MirroredTicket, StatusChange, Store, StoreError, Ticket};

impl Store {
    /// Create a ticket with the next free number of its project.
    pub async fn create_ticket(
        &self,
        project: &ProjectName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Ticket, StoreError> {
        self.db.create_ticket(project, title, body, labels).await
    }

    /// Insert or refresh a ticket mirrored from an outside tracker (its key is
    /// `<project>-<number>`); a changed title or body counts as an edit; status is kept.
    pub async fn mirror_ticket(&self, ticket: &MirroredTicket<'_>) -> Result<Ticket, StoreError> {
        self.db.mirror_ticket(ticket).await
    }

    pub async fn ticket(&self, key: &TicketKey) -> Result<Option<Ticket>, StoreError> {
        self.db.ticket(key).await
    }

    pub async fn tickets(&self, project: Option<&str>) -> Result<Vec<Ticket>, StoreError> {
        self.db.tickets(project).await
    }

    /// The tickets in any of `statuses` (read through an index, so the few still open are found
    /// without reading every ticket ever done), by project and number.
    pub async fn tickets_in_status(
        &self,
        statuses: &[TicketStatus],
    ) -> Result<Vec<Ticket>, StoreError> {
        self.db.tickets_in_status(statuses).await
    }

    /// The projects that have tickets, by name.
    pub async fn ticket_projects(&self) -> Result<Vec<String>, StoreError> {
        self.db.ticket_projects().await
    }

    /// Change a ticket's title and/or body (a person's edit).
    pub async fn edit_ticket(
        &self,
        key: &TicketKey,
        title: Option<&str>,
        body: Option<&str>,
    ) -> Result<Ticket, StoreError> {
        self.db.edit_ticket(key, title, body).await
    }

    /// Add or remove one label; returns whether the labels changed.
    pub async fn set_label(
        &self,
        key: &TicketKey,
        label: &str,
        present: bool,
    ) -> Result<bool, StoreError> {
        self.db.set_label(key, label, present).await
    }

    /// Create a ticket linked from `from`, once per `marker`: a second call returns the first
    /// ticket and `false`.
    pub async fn create_linked_ticket(
        &self,
        from: &TicketKey,
        kind: &str,
        marker: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<(Ticket, bool), StoreError> {
        self.db
            .create_linked_ticket(from, kind, marker, title, body, labels)
            .await
    }

    /// Links from and to a ticket.
    pub async fn links(&self, key: &TicketKey) -> Result<Vec<Link>, StoreError> {
        self.db.links(key).await
    }

    /// Set a ticket's status; records a change only when it differs. Returns whether it changed.
    pub async fn set_ticket_status(
        &self,
        key: &TicketKey,
        status: TicketStatus,
        actor: &str,
    ) -> Result<bool, StoreError> {
        self.db.set_ticket_status(key, status, actor).await
    }

    /// Add a comment. With a marker it is idempotent: returns false when that marker exists.
    pub async fn add_comment(
        &self,
        key: &TicketKey,
        author: &str,
        marker: Option<&str>,
        body: &str,
    ) -> Result<bool, StoreError> {
        self.db.add_comment(key, author, marker, body).await
    }

    pub async fn comments(&self, key: &TicketKey) -> Result<Vec<Comment>, StoreError> {
        self.db.comments(key).await
    }

    pub async fn status_changes(&self, key: &TicketKey) -> Result<Vec<StatusChange>, StoreError> {
        self.db.status_changes(key).await
    }
}
