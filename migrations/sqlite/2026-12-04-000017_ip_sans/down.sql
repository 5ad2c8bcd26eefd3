ALTER TABLE services DROP COLUMN ip_ranges;
