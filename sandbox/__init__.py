"""What runs inside selfprog's containers: the harness, the JSON Lines protocol, the report API.

This package is the fixed side of the trust boundary. It is copied into the runtime image as
shipped; a variant can neither change it nor replace it.
"""
