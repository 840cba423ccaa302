"""A workspace on a platform server: the client side.

`Workspace.connect(url, token=…)` runs every domain service on the client, as a local
workspace does, but keeps the records and blobs on the server: the metadata stores are
proxies that call the server's store methods (`RemoteStore`, answered by
`modelcycle.server.rpc` under the token's role), and blobs move through `RemoteBlobStore`
in resumable chunks (straight to S3 with pre-signed URLs when the server's blobs are
there). The server checks every call and records it under the token's name.
"""

from modelcycle.remote.http import Connection

__all__ = ["Connection"]
