-- The IP networks a deployment admin allowed a service's certificates to name as IP
-- SANs: a JSON array of CIDRs; NULL (the default) allows no IP address at all.
ALTER TABLE services ADD COLUMN ip_ranges TEXT;
