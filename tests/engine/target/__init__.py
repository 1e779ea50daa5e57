"""Writing pages: version order, the fast and careful paths, bad documents, migrations, the cursor."""
