-- Whether a tenant registered a user (adding a member, §3) is asked by user id: without this
-- index every such question scanned all registrations.
CREATE INDEX app_users_by_user ON app_users (user_id);
