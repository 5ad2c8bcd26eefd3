DROP TABLE imported_objects;
DROP TABLE inventory;
DROP TABLE object_sources;
