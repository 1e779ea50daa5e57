"""What the tests stand on: engines, the Elasticsearch protocol server, helpers; and their own tests."""
