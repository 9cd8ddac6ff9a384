// `sqlx::migrate!` embeds `migrations/` at compile time: rebuild this crate
// when a migration is added or changed (cargo does not watch the directory
// otherwise, and a new migration would silently not run).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
