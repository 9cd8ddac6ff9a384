-- User roles (RoleChanged). Written by the users projection only; the API's
-- admin routes read it to authorize.
ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT 'member';
