"""Speech confirmation: is the sound the cheap gate let through speech, or music, tones and alerts?"""
