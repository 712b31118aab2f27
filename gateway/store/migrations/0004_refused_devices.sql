-- Device updates a run sent that could never be stored (a NUL byte or
-- invalid UTF-8 in a field): refused one by one, the rest of their segment
-- applied. refused_reason is the first one's reason.
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS refused integer NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS refused_reason text;
