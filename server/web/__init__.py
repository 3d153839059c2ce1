"""The HTTP side: a JSON API and a web page in front of the gRPC service.

It talks to the search server through the project's gRPC client only, so it loads
neither torch nor faiss and can run as its own process (`visearch web`) or inside
`visearch serve --http-port`. The FastAPI application is in app.py; config.py is
light enough for the command line and the server's settings to import.
"""
