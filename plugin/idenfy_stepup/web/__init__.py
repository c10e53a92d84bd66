"""HTTP plumbing the endpoints share: responses, form reading, client addresses, security
headers, the connection edge in front of uvicorn, push-stream slots, JSON text checks."""
