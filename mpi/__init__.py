"""Master person index: matching, clustering and master-id anchors."""
