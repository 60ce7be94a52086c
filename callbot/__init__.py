"""callbot: settings, logging and the console script shared by the robot, audio server and simswitch."""
