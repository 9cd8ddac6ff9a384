-- The file janitor (infra/src/janitor.rs): videos whose files it removed
-- (an upload never completed, or a video deleted past its grace period),
-- so each is removed once. Bookkeeping of the blob store, not a read model.
CREATE TABLE IF NOT EXISTS file_sweeps (
    video_id uuid PRIMARY KEY,
    reason   text        NOT NULL,
    swept_at timestamptz NOT NULL DEFAULT now()
);
