"""Code that the data server, the business servers and the client all use."""
