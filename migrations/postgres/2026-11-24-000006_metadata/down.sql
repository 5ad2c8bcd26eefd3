DROP TABLE metadata;
