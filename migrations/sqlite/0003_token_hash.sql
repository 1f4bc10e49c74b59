-- mandate schema v3 (sqlite): the SHA-256 of each issued access token (the whole
-- compact JWS, base64url). A token presented back to this issuer (token
-- exchange, introspection) whose hash equals its row's is the token this
-- server signed, so its claims are read without an ECDSA verification.
-- Rows written before this migration have none and are verified by signature.
-- Keep in step with the other driver's 0003.
ALTER TABLE tokens ADD COLUMN token_hash TEXT;
