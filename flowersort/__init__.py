"""flowersort: find the flower photos in a photo archive with a small numpy network."""
