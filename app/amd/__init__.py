"""amd-report: answering-machine decisions over labelled fixtures, through the pipeline or full replays."""
