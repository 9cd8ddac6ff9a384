-- Daily activity read model (projections/src/activity.rs): who acted on
-- which UTC day, for the admin stats' daily active users.
CREATE TABLE IF NOT EXISTS user_activity (
    day     date NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (day, user_id)
);
