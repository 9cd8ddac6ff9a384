-- Subscriptions (projections/src/subscriptions.rs): each user's latest
-- subscription, as GET /v1/subscriptions/me shows it. Whether it is still
-- running depends on the time: the API compares `ends_at` with now.
CREATE TABLE IF NOT EXISTS subscriptions (
    user_id                  uuid        PRIMARY KEY,
    plan                     text        NOT NULL,
    credits_per_month        bigint      NOT NULL,
    provider                 text        NOT NULL,
    provider_subscription_id text        NOT NULL,
    current_period_start     timestamptz NOT NULL,
    current_period_end       timestamptz NOT NULL,
    -- canceled by the user (runs to ends_at)
    canceled                 boolean     NOT NULL DEFAULT false,
    -- a renewal payment failed (runs to ends_at)
    payment_failed           boolean     NOT NULL DEFAULT false,
    ends_at                  timestamptz,
    -- the provider ended it
    ended_at                 timestamptz,
    started_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL
);
