//! `users`: public profiles, one row per registered user.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lokiz_domain::user::{User, UserEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct UsersProjector;

/// One user's changes over a batch, folded: the last word on each field
/// wins, `None` leaves the field as it is.
#[derive(Default)]
struct Patch {
    display_name: Option<String>,
    bio: Option<Option<String>>,
    profile_image_url: Option<Option<String>>,
    role: Option<&'static str>,
    banned: Option<bool>,
    updated_at: DateTime<Utc>,
}

/// The rows of a batch's registrations, column by column.
#[derive(Default)]
struct NewUsers {
    ids: Vec<Uuid>,
    usernames: Vec<String>,
    emails: Vec<String>,
    display_names: Vec<String>,
    roles: Vec<&'static str>,
    registered_at: Vec<DateTime<Utc>>,
}

/// A batch's new rows and its changes to rows, per user.
#[derive(Default)]
struct Changes {
    registered: NewUsers,
    patches: HashMap<Uuid, Patch>,
}

impl Changes {
    /// `id`'s patch, stamped with the time of the latest event folded in.
    fn patch(&mut self, id: Uuid, at: DateTime<Utc>) -> &mut Patch {
        let patch = self.patches.entry(id).or_default();
        patch.updated_at = at;
        patch
    }

    fn fold(&mut self, id: Uuid, event: UserEvent) {
        match event {
            UserEvent::Registered {
                username,
                email,
                display_name,
                role,
                registered_at,
                ..
            } => {
                let new = &mut self.registered;
                new.ids.push(id);
                new.usernames.push(username.as_str().to_owned());
                new.emails.push(email.as_str().to_owned());
                new.display_names.push(display_name.into_inner());
                new.roles.push(role.as_str());
                new.registered_at.push(registered_at);
            }
            UserEvent::ProfileUpdated {
                display_name,
                bio,
                profile_image_url,
                updated_at,
            } => {
                let patch = self.patch(id, updated_at);
                if let Some(d) = display_name {
                    patch.display_name = Some(d.into_inner());
                }
                if let Some(b) = bio {
                    patch.bio = Some(b.map(|b| b.into_inner()));
                }
                if let Some(u) = profile_image_url {
                    patch.profile_image_url = Some(u.map(|u| u.into_inner()));
                }
            }
            UserEvent::RoleChanged { role, changed_at } => {
                self.patch(id, changed_at).role = Some(role.as_str());
            }
            UserEvent::Banned { banned_at, .. } => {
                self.patch(id, banned_at).banned = Some(true);
            }
            UserEvent::Unbanned { unbanned_at, .. } => {
                self.patch(id, unbanned_at).banned = Some(false);
            }
        }
    }

    /// Two statements for the whole batch: the new rows, then every changed
    /// row once. Inserting first is what applying each event in turn does:
    /// a user's `Registered` is the first event of its aggregate, so no
    /// change to that user comes before it in the batch.
    async fn write(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let new = self.registered;
        if !new.ids.is_empty() {
            sqlx::query(
                "INSERT INTO users (id, username, email, display_name, role, created_at, updated_at)
                 SELECT id, username, email, display_name, role, at, at
                   FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                               $6::timestamptz[])
                        AS r(id, username, email, display_name, role, at)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(new.ids)
            .bind(new.usernames)
            .bind(new.emails)
            .bind(new.display_names)
            .bind(new.roles)
            .bind(new.registered_at)
            .execute(&mut *conn)
            .await?;
        }
        if self.patches.is_empty() {
            return Ok(());
        }
        let n = self.patches.len();
        let mut ids = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let (mut set_bios, mut bios) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut set_images, mut images) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut roles = Vec::with_capacity(n);
        let mut banned = Vec::with_capacity(n);
        let mut ats = Vec::with_capacity(n);
        for (id, p) in self.patches {
            ids.push(id);
            names.push(p.display_name);
            set_bios.push(p.bio.is_some());
            bios.push(p.bio.flatten());
            set_images.push(p.profile_image_url.is_some());
            images.push(p.profile_image_url.flatten());
            roles.push(p.role);
            banned.push(p.banned);
            ats.push(p.updated_at);
        }
        sqlx::query(
            "UPDATE users u SET
                display_name = coalesce(p.display_name, u.display_name),
                bio = CASE WHEN p.set_bio THEN p.bio ELSE u.bio END,
                profile_image_url = CASE WHEN p.set_image THEN p.image ELSE u.profile_image_url END,
                role = coalesce(p.role, u.role),
                banned = coalesce(p.banned, u.banned),
                updated_at = p.at
               FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::bool[], $6::text[],
                           $7::text[], $8::bool[], $9::timestamptz[])
                    AS p(id, display_name, set_bio, bio, set_image, image, role, banned, at)
              WHERE u.id = p.id",
        )
        .bind(ids)
        .bind(names)
        .bind(set_bios)
        .bind(bios)
        .bind(set_images)
        .bind(images)
        .bind(roles)
        .bind(banned)
        .bind(ats)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Projector for UsersProjector {
    fn name(&self) -> &'static str {
        "users"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[User::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, &[event]).await
    }

    /// Set-based: a batch costs two statements however many profile edits,
    /// role changes and bans it holds (one per event kept this projection's
    /// transaction open for seconds under load, and every open write
    /// transaction holds the relay's horizon back).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut changes = Changes::default();
        for event in events {
            changes.fold(uuid_id(event)?, decode::<UserEvent>(event)?);
        }
        changes.write(conn).await?;
        Ok(())
    }
}
