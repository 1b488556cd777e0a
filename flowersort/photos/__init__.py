"""Photo files: walking an archive, decoding pixels, EXIF, HEIC, XMP sidecars."""
