-- Tickets mirrored from an outside tracker keep the tracker's key and link.
ALTER TABLE tickets ADD COLUMN external TEXT;
ALTER TABLE tickets ADD COLUMN url TEXT;
