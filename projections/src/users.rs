//! `users`: public profiles, one row per registered user.

use async_trait::async_trait;
use lokiz_domain::user::{User, UserEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct UsersProjector;

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
        let id = uuid_id(event)?;
        match decode::<UserEvent>(event)? {
            UserEvent::Registered {
                username,
                email,
                display_name,
                role,
                registered_at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO users (id, username, email, display_name, role, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(username.as_str())
                .bind(email.as_str())
                .bind(display_name.as_str())
                .bind(role.as_str())
                .bind(registered_at)
                .execute(conn)
                .await?;
            }
            UserEvent::ProfileUpdated {
                display_name,
                bio,
                profile_image_url,
                updated_at,
            } => {
                sqlx::query(
                    "UPDATE users SET
                        display_name = coalesce($2, display_name),
                        bio = CASE WHEN $3 THEN $4 ELSE bio END,
                        profile_image_url = CASE WHEN $5 THEN $6 ELSE profile_image_url END,
                        updated_at = $7
                      WHERE id = $1",
                )
                .bind(id)
                .bind(display_name.as_ref().map(|d| d.as_str()))
                .bind(bio.is_some())
                .bind(bio.flatten().map(|b| b.into_inner()))
                .bind(profile_image_url.is_some())
                .bind(profile_image_url.flatten().map(|u| u.into_inner()))
                .bind(updated_at)
                .execute(conn)
                .await?;
            }
            UserEvent::RoleChanged { role, changed_at } => {
                sqlx::query("UPDATE users SET role = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(role.as_str())
                    .bind(changed_at)
                    .execute(conn)
                    .await?;
            }
            UserEvent::Banned { banned_at: at, .. }
            | UserEvent::Unbanned {
                unbanned_at: at, ..
            } => {
                let banned = event.event_type == "Banned";
                sqlx::query("UPDATE users SET banned = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(banned)
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}
