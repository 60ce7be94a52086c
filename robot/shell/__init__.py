"""The gevent shell: the robot's hub thread and the code that runs one call in it."""
